DROP TRIGGER wharf_count_privileges_insert;
DROP TRIGGER wharf_count_privileges_update;
DROP TRIGGER wharf_count_privileges_delete;
DELETE FROM change_counters WHERE kind = 'privileges';
DROP TABLE privileges;
