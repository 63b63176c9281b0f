ALTER TABLE uploads DROP COLUMN lease_until;
ALTER TABLE uploads DROP COLUMN writer;
ALTER TABLE uploads DROP COLUMN owner;
