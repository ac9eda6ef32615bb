"""What the supervisor, the JVM bridge and the record-processor children agree on: environment variable names and
exit statuses.

Kept apart so that the supervisor (and the benchmarks) can name them without importing the processor, which loads
amazon_kclpy and the whole pipeline.
"""

from __future__ import annotations

# The supervisor writes the validated configuration to a file and tells each child where it is.
RESOLVED_CONFIG_ENV = "CONSUMER_RESOLVED_CONFIG"
# Created by the supervisor when it is asked to stop: children stop retrying and leave their batch unsettled.
STOP_FILE_ENV = "CONSUMER_STOP_FILE"
# Where each child keeps its state file (see consumer.health).
CHILDREN_DIR_ENV = "CONSUMER_CHILDREN_DIR"

# A child's exit statuses: a batch that could be neither delivered nor dead-lettered, and any unexpected error.
EXIT_UNDELIVERED = 3
EXIT_FAILED = 4
# The bridge's exit status when a shard's position was older than the stream's retention and on_trimmed is fail.
EXIT_TRIMMED = 4
