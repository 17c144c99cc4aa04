-- One counter that every change able to invalidate an authenticated identity bumps in the
-- same transaction: a key revoked or deleted, a user's email or admin flag changed, a user
-- deleted (its keys cascade). The API caches key → user in memory and reads this counter
-- before serving a cached key; a request that starts after the change committed reads the
-- new value and finds an empty cache, so a revoked key fails on its very next request.
-- Keys are only ever added without a bump: the cache never holds "unknown key" answers.
CREATE TABLE api_key_generation (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    generation  bigint NOT NULL
);
INSERT INTO api_key_generation (singleton, generation) VALUES (true, 0);

CREATE FUNCTION bump_api_key_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE api_key_generation SET generation = generation + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_changed AFTER UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION bump_api_key_generation();
CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION bump_api_key_generation();
CREATE TRIGGER users_changed AFTER UPDATE ON users
    FOR EACH ROW
    WHEN (OLD.email IS DISTINCT FROM NEW.email OR OLD.is_admin IS DISTINCT FROM NEW.is_admin)
    EXECUTE FUNCTION bump_api_key_generation();
CREATE TRIGGER users_deleted AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION bump_api_key_generation();
