-- One database per service: each service owns its data and applies its own Alembic
-- migrations at start, so only the empty databases are made here.
-- The postgres image runs this once, when its data volume is initialised; on an existing
-- volume create a missing database by hand (see deploy/README.md).
CREATE DATABASE meer_enrolment;
CREATE DATABASE meer_mailer;
CREATE DATABASE meer_tracking;
CREATE DATABASE meer_coaching;
