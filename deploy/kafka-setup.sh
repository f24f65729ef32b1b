#!/bin/sh
# Makes compose's Kafka topics, SCRAM users and ACLs; run by the kafka-setup container over
# the broker's loopback listener. Generated from the code (the handlers each service registers,
# the events it constructs, shared.kafka.topic_config) by tests/unit/deploy/test_kafka_access.py:
#   python -m tests.unit.deploy.test_kafka_access > deploy/kafka-setup.sh
set -eu
bootstrap="--bootstrap-server 127.0.0.1:9094"
bin=/opt/kafka/bin
topic() {
  name=$1; shift; "$bin/kafka-topics.sh" $bootstrap --create --if-not-exists --topic "$name" \
    --partitions "${MEER_KAFKA_PARTITIONS:-6}" --replication-factor 1 "$@"
}
user() { "$bin/kafka-configs.sh" $bootstrap --alter --entity-type users --entity-name "$1" \
  --add-config "SCRAM-SHA-512=[password=$2]"; }
allow() { principal=$1; shift; "$bin/kafka-acls.sh" $bootstrap --add \
  --allow-principal "User:$principal" "$@"; }
topic meer.coaching --config cleanup.policy=delete --config retention.ms=-1
topic meer.coaching.dlt --config cleanup.policy=delete --config retention.ms=1209600000
topic meer.contact --config cleanup.policy=compact --config delete.retention.ms=86400000 --config max.compaction.lag.ms=86400000 --config min.cleanable.dirty.ratio=0.1 --config segment.ms=86400000
topic meer.contact.dlt --config cleanup.policy=delete --config retention.ms=1209600000
topic meer.engagement --config cleanup.policy=delete --config retention.ms=-1
topic meer.engagement.dlt --config cleanup.policy=delete --config retention.ms=1209600000
topic meer.export --config cleanup.policy=delete --config retention.ms=604800000
topic meer.export.dlt --config cleanup.policy=delete --config retention.ms=1209600000
topic meer.mail --config cleanup.policy=delete --config retention.ms=-1
topic meer.mail.dlt --config cleanup.policy=delete --config retention.ms=1209600000
topic meer.organisation --config cleanup.policy=delete --config retention.ms=-1
topic meer.organisation.dlt --config cleanup.policy=delete --config retention.ms=1209600000
topic meer.participant --config cleanup.policy=delete --config retention.ms=-1
topic meer.participant.dlt --config cleanup.policy=delete --config retention.ms=1209600000
topic meer.staff --config cleanup.policy=delete --config retention.ms=-1
topic meer.staff.dlt --config cleanup.policy=delete --config retention.ms=1209600000
user meer-enrolment "$MEER_KAFKA_PASSWORD_ENROLMENT"
allow meer-enrolment --group enrolment --operation Read
allow meer-enrolment --topic meer.contact --operation Describe --operation Write
allow meer-enrolment --topic meer.engagement --operation Describe --operation Read
allow meer-enrolment --topic meer.engagement.dlt --operation Describe --operation Write
allow meer-enrolment --topic meer.export --operation Describe --operation Read --operation Write
allow meer-enrolment --topic meer.export.dlt --operation Describe --operation Write
allow meer-enrolment --topic meer.mail --operation Describe --operation Read
allow meer-enrolment --topic meer.mail.dlt --operation Describe --operation Write
allow meer-enrolment --topic meer.organisation --operation Describe --operation Write
allow meer-enrolment --topic meer.participant --operation Describe --operation Write
allow meer-enrolment --topic meer.staff --operation Describe --operation Write
user meer-mailer "$MEER_KAFKA_PASSWORD_MAILER"
allow meer-mailer --group mailer --operation Read
allow meer-mailer --topic meer.coaching --operation Describe --operation Read
allow meer-mailer --topic meer.coaching.dlt --operation Describe --operation Write
allow meer-mailer --topic meer.contact --operation Describe --operation Read
allow meer-mailer --topic meer.contact.dlt --operation Describe --operation Write
allow meer-mailer --topic meer.engagement --operation Describe --operation Read
allow meer-mailer --topic meer.engagement.dlt --operation Describe --operation Write
allow meer-mailer --topic meer.export --operation Describe --operation Read --operation Write
allow meer-mailer --topic meer.export.dlt --operation Describe --operation Write
allow meer-mailer --topic meer.mail --operation Describe --operation Write
allow meer-mailer --topic meer.organisation --operation Describe --operation Read
allow meer-mailer --topic meer.organisation.dlt --operation Describe --operation Write
allow meer-mailer --topic meer.participant --operation Describe --operation Read
allow meer-mailer --topic meer.participant.dlt --operation Describe --operation Write
allow meer-mailer --topic meer.staff --operation Describe --operation Read
allow meer-mailer --topic meer.staff.dlt --operation Describe --operation Write
user meer-tracking "$MEER_KAFKA_PASSWORD_TRACKING"
allow meer-tracking --group tracking --operation Read
allow meer-tracking --topic meer.engagement --operation Describe --operation Write
allow meer-tracking --topic meer.export --operation Describe --operation Read --operation Write
allow meer-tracking --topic meer.export.dlt --operation Describe --operation Write
allow meer-tracking --topic meer.mail --operation Describe --operation Read
allow meer-tracking --topic meer.mail.dlt --operation Describe --operation Write
allow meer-tracking --topic meer.organisation --operation Describe --operation Read
allow meer-tracking --topic meer.organisation.dlt --operation Describe --operation Write
allow meer-tracking --topic meer.participant --operation Describe --operation Read
allow meer-tracking --topic meer.participant.dlt --operation Describe --operation Write
user meer-coaching "$MEER_KAFKA_PASSWORD_COACHING"
allow meer-coaching --group coaching --operation Read
allow meer-coaching --topic meer.coaching --operation Describe --operation Read --operation Write
allow meer-coaching --topic meer.coaching.dlt --operation Describe --operation Write
allow meer-coaching --topic meer.contact --operation Describe --operation Read
allow meer-coaching --topic meer.contact.dlt --operation Describe --operation Write
allow meer-coaching --topic meer.engagement --operation Describe --operation Read
allow meer-coaching --topic meer.engagement.dlt --operation Describe --operation Write
allow meer-coaching --topic meer.export --operation Describe --operation Read --operation Write
allow meer-coaching --topic meer.export.dlt --operation Describe --operation Write
allow meer-coaching --topic meer.mail --operation Describe --operation Read
allow meer-coaching --topic meer.mail.dlt --operation Describe --operation Write
allow meer-coaching --topic meer.organisation --operation Describe --operation Read
allow meer-coaching --topic meer.organisation.dlt --operation Describe --operation Write
allow meer-coaching --topic meer.participant --operation Describe --operation Read
allow meer-coaching --topic meer.participant.dlt --operation Describe --operation Write
allow meer-coaching --topic meer.staff --operation Describe --operation Read
allow meer-coaching --topic meer.staff.dlt --operation Describe --operation Write
