-- milliseconds (rounded up) until the earliest planned tick of a schedule without an error (a broken one waits for the next round)
SELECT ceil(extract(epoch FROM min(next_tick_at) - now()) * 1000)::bigint FROM fetchq.schedules WHERE last_error IS NULL
