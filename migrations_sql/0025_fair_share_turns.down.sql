-- Back to 0021's turn look-up among the pending rows.
CREATE INDEX video_requests_fair_guild_idx ON video_requests (COALESCE(guild_id, -user_id), fair_round, fair_turn)
    WHERE status = 'pending';

CREATE OR REPLACE FUNCTION video_requests_take_turn() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_clock bigint;
    v_last  bigint;
BEGIN
    SELECT fair_round INTO v_last FROM video_requests WHERE user_id = NEW.user_id ORDER BY id DESC LIMIT 1;
    IF NEW.status <> 'pending' THEN
        -- Carried, so that the user's newest row always holds the user's last round.
        NEW.fair_round := COALESCE(v_last, 0);
        NEW.fair_turn := 0;
        RETURN NEW;
    END IF;
    SELECT COALESCE(max(round), 0) INTO v_clock FROM fair_share_clock;  -- 0 if its row were ever lost
    NEW.fair_round := GREATEST(v_clock - NEW.priority, v_last + 1);  -- GREATEST ignores a NULL v_last
    -- ORDER BY ... LIMIT 1 rather than max(): the index's order answers it with one entry whatever
    -- the statistics say (with none, max() was planned as a read of the guild's whole round).
    SELECT fair_turn + 1 INTO NEW.fair_turn FROM video_requests
    WHERE status = 'pending' AND COALESCE(guild_id, -user_id) = COALESCE(NEW.guild_id, -NEW.user_id)
      AND fair_round = NEW.fair_round
    ORDER BY fair_turn DESC LIMIT 1;
    NEW.fair_turn := COALESCE(NEW.fair_turn, 0);
    RETURN NEW;
END;
$$;

DROP TABLE fair_share_turns;
