DELETE FROM settings WHERE key = 'read_only' AND value = '';
