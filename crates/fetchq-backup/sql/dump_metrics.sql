COPY (SELECT json_build_array(id, created_at, metric, value)
      FROM {metrics} ORDER BY id) TO STDOUT
