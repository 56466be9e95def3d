SELECT affected_rows FROM fetchq.metric_time($1::text[], $2::text[], $3::double precision[])
