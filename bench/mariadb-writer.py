"""The benchmarks' write load on a MariaDB database (not part of CI): RATE transactions a
second for DURATION seconds through one client, each statement its own commit, into the table
`orders` (with a `note` column) of database `shop`. With ROWS, every other transaction updates
one of the first ROWS rows (picked at random) instead of inserting one. With NOTE_BYTES (an
environment variable), each inserted note is that long (random letters): a binary log that
grows by megabytes a second.

    python3 bench/mariadb-writer.py PORT RATE DURATION [ROWS]
"""

import os
import random
import string
import subprocess
import sys
import time

port, rate, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = int(sys.argv[4]) if len(sys.argv) > 4 else 0
pad = int(os.environ.get("NOTE_BYTES", "0"))
client = subprocess.Popen(
    ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", port, "-u", "root", "shop"],
    stdin=subprocess.PIPE,
    text=True,
)
start = time.time()
n = 0
while time.time() - start < duration:
    n += 1
    if rows and n % 2:
        client.stdin.write(f"UPDATE orders SET note = 'changed {n}' WHERE id = {random.randint(1, rows)};\n")
    else:
        filler = "".join(random.choices(string.ascii_letters, k=pad))
        client.stdin.write(f"INSERT INTO orders (note) VALUES ('order {n} {filler}');\n")
    client.stdin.flush()
    time.sleep(max(0, start + n / rate - time.time()))
client.stdin.close()
client.wait()
