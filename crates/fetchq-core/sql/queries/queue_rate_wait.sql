SELECT extract(epoch FROM fetchq.queue_rate_wait($1))::float8
