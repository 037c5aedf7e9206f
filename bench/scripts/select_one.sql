-- Calibration: the cost of one round trip and nothing else.
SELECT 1;
