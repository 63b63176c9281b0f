DROP TABLE task_runs;
DROP TABLE tasks;
DROP TABLE blobs;
