DROP TRIGGER wharf_count_privileges ON privileges;
DROP TRIGGER wharf_count_roles ON roles;
DROP FUNCTION wharf_count_table();
DROP TABLE change_counters;
