DROP TABLE dashboard_snapshots;
