-- Run before any migration: the table that records which migrations are applied.
CREATE SCHEMA IF NOT EXISTS fetchq;
CREATE TABLE IF NOT EXISTS fetchq.migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
