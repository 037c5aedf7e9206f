CREATE INDEX video_requests_prompt_fts_idx ON video_requests USING gin (to_tsvector('english'::regconfig, prompt));
ALTER INDEX video_requests_prompt_fts_idx ALTER COLUMN 1 SET STATISTICS 1000;
ALTER TABLE video_requests DROP COLUMN prompt_tsv;
