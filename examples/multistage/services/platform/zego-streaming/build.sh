# Stands in for a compiler: writes an executable for the given version to stdout.
printf '#!/bin/sh\necho "zego-streaming %s: serving with $(cat /app/streaming.yaml)"\n' "$1"
