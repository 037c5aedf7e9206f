DROP FUNCTION IF EXISTS record_video_request_delivery(bigint, text, text, bigint, text, boolean);
DROP FUNCTION IF EXISTS transition_video_request(bigint, text, text, text, boolean, text, text, text[], text[], bigint,
                                                 integer, text[], text, text);
