-- fetchq schema 11: FetchQ v4 compatibility (filled in by this change).
SELECT 1;
