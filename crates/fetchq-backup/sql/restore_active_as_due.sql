-- Documents that were active (leased by a worker of the old database) are
-- pending and due now, without a lease.
UPDATE {docs} SET status = 1, next_iteration = now(), lease_token = NULL WHERE status = 2
