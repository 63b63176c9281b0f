DROP TABLE web_logins;
