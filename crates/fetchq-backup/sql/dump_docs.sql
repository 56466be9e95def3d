COPY (SELECT json_build_array(subject, version, priority, status, attempts, iterations,
                              next_iteration, created_at, last_iteration, lease_token, payload)
      FROM {docs}) TO STDOUT
