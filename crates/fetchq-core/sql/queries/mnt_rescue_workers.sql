SELECT workers, released FROM fetchq.mnt_rescue_workers()
