COPY (SELECT json_build_array(id, created_at, subject, message, details, ref_id)
      FROM {logs} ORDER BY id) TO STDOUT
