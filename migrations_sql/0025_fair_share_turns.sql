-- Fair share under a long queue: the start order without reading every waiting request.
--
-- 0021 found a guild's last turn in a round by a look-up among the pending rows
-- (video_requests_fair_guild_idx), and the claim takes pending rows in the fair order from
-- video_requests_fair_queue_idx. Both indexes are partial (status = 'pending'): rows pass
-- through them, so between two vacuums of a large table they hold mostly dead pages, and the
-- planner costs them by their pages. With statistics taken while few requests waited, the plans
-- PL/pgSQL keeps read instead every pending row (by status, then a sort) or every row of the
-- round (the fair queue's index, filtered by guild): on the admission benchmark's 1M rows, an
-- admission's server CPU went from 2 ms to 7-12 ms as 14,000 requests came to wait.
--   * A guild's turns in a round are counted in a table of their own, one row per guild and
--     round, taken by an upsert at insert: no plan to choose. A guild's k-th request inserted
--     into a round takes turn k - 1 (0021 counted only those still waiting, so a request could
--     share a turn number with one already started; the order among guilds is the same).
--     The row is held until the admission commits, as the guild's spend ledger rows are (0022).
--   * A guild's rows for rounds no request can join any more (below the clock by more than the
--     largest head start, 100 rounds: quota_policies_priority_check) go when it opens a round.
--   * The fair_guild index goes: only the look-up used it.
--   * admit_video_requests' read of the queue's head is told not to sort (fair_queue_head,
--     0024): the fair queue's index gives the order. The claim keeps its plans: told the same
--     for the whole function, other statements of it planned far worse (a test of the start
--     order took 50 s instead of 5), and it runs at most as often as Veo lets requests start.

CREATE TABLE fair_share_turns (
    guild_key bigint NOT NULL,  -- guild_id, or -user_id for direct messages (a guild of one)
    round bigint NOT NULL,
    turns integer NOT NULL CONSTRAINT fair_share_turns_turns_check CHECK (turns > 0),
    PRIMARY KEY (guild_key, round)
);
COMMENT ON TABLE fair_share_turns IS
    'How many requests each guild has put into each fair-share round: the next one''s turn (0025).';

-- The turns of the requests waiting now, so that those arriving next queue behind them.
INSERT INTO fair_share_turns (guild_key, round, turns)
SELECT COALESCE(guild_id, -user_id), fair_round, max(fair_turn) + 1
FROM video_requests WHERE status = 'pending'
GROUP BY 1, 2;

CREATE OR REPLACE FUNCTION video_requests_take_turn() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_clock bigint;
    v_last  bigint;
    v_guild bigint := COALESCE(NEW.guild_id, -NEW.user_id);
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
    INSERT INTO fair_share_turns AS t (guild_key, round, turns) VALUES (v_guild, NEW.fair_round, 1)
    ON CONFLICT (guild_key, round) DO UPDATE SET turns = t.turns + 1
    RETURNING t.turns - 1 INTO NEW.fair_turn;
    IF NEW.fair_turn = 0 THEN
        DELETE FROM fair_share_turns WHERE guild_key = v_guild AND round < v_clock - 100;
    END IF;
    RETURN NEW;
END;
$$;

DROP INDEX video_requests_fair_guild_idx;
