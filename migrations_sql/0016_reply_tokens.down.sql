DROP TABLE IF EXISTS reply_tokens;
