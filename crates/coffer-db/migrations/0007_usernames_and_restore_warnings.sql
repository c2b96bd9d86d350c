-- Usernames are unique regardless of case: `ADMIN` and `admin` name one user. Names of an
-- older database that differ only by case keep the oldest; the others get a suffix of their id.
UPDATE users SET username = username || '-' || substr(id, 1, 8)
 WHERE EXISTS (SELECT 1 FROM users o
                WHERE lower(o.username) = lower(users.username)
                  AND (o.created_at < users.created_at
                       OR (o.created_at = users.created_at AND o.id < users.id)));
CREATE UNIQUE INDEX users_username_nocase ON users (username COLLATE NOCASE);

-- What a restore changed on its way (special files left out of an uploaded archive, ...).
ALTER TABLE restore_tasks ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]';
