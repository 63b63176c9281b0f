DROP TABLE uploads;
DROP TABLE assets;
DROP TABLE repositories;
DROP TABLE blob_stores;
DROP TABLE users;
DROP TABLE settings;
