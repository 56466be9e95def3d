SELECT (SELECT affected_rows FROM fetchq.metric_log_increment($1::text[], $2::text[], $3::bigint[]))
     + (SELECT affected_rows FROM fetchq.metric_time($4::text[], $5::text[], $6::double precision[]))
