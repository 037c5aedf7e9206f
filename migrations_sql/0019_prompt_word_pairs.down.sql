DROP INDEX video_requests_prompt_pairs_idx;
DROP FUNCTION prompt_word_pairs(tsvector);
