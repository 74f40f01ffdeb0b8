-- PostgreSQL set-up for eutirads (Debian's postgresql package). Run as the postgres user:
--   sudo -u postgres psql -v password="'a long random password'" -f deploy/postgresql/setup.sql
-- then put the same password in DATABASE_URL (/etc/eutirads/eutirads.env).
CREATE ROLE eutirads LOGIN PASSWORD :password;
CREATE DATABASE eutirads OWNER eutirads ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE eutirads FROM PUBLIC;
\connect eutirads
-- PostgreSQL 15 no longer lets every role create in public; the app owns its schema.
ALTER SCHEMA public OWNER TO eutirads;
