-- Roles hold privileges and other roles (Nexus's model); users hold roles.
CREATE TABLE roles (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    privileges TEXT NOT NULL DEFAULT '[]',
    roles TEXT NOT NULL DEFAULT '[]',
    builtin BOOLEAN NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
ALTER TABLE users ADD COLUMN roles TEXT NOT NULL DEFAULT '[]';
INSERT INTO roles (id, name, description, privileges, roles, builtin, created_at)
    VALUES ('nx-admin', 'nx-admin', 'Administrator: every privilege', '["nx-all"]', '[]', TRUE, 0);
INSERT INTO roles (id, name, description, privileges, roles, builtin, created_at)
    VALUES ('nx-anonymous', 'nx-anonymous', 'What callers without credentials may do (nothing until an administrator grants it)', '[]', '[]', TRUE, 0);
UPDATE users SET roles = '["nx-admin"]' WHERE admin;
