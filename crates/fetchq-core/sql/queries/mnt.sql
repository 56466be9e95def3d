SELECT processed, packed FROM fetchq.mnt($1)
