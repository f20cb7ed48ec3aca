"""Writes an audit chain of N records into a websessions SQLite database, computed from the
README's description of the canonical content alone, as an outside tool would, and prints
its head as SEQ:HASH. The e2e suite (tests/e2e/audit.rs) has `websessions audit verify`
check it: the README's description is the format.

    python3 tests/contract/audit_chain.py PATH/TO/websessions.db N
"""
import hashlib, json, sqlite3, sys

db, n = sys.argv[1], int(sys.argv[2])
con = sqlite3.connect(db)
prev = bytes(32)
rows = []
for seq in range(1, n + 1):
    username, at = f"user{seq}", 1796724000 + seq
    agent = 'Mozilla/5.0 "x" é'
    details = '{"count":%d,"reason":"bad_credentials"}' % seq
    canonical = ('{"seq":%d,"at":%d,"event":"login_failed","username":%s,"actor":null,'
                 '"session_id":null,"client_ip":"203.0.113.5","user_agent":%s,"details":%s}'
                 % (seq, at, json.dumps(username, ensure_ascii=False),
                    json.dumps(agent, ensure_ascii=False), details))
    digest = hashlib.sha256(prev + canonical.encode()).digest()
    rows.append((seq, at, "login_failed", username, None, None, "203.0.113.5", agent, details,
                 prev, digest))
    prev = digest
con.executemany("INSERT INTO audit_records (seq, at, event, username, actor, session_id, "
                "client_ip, user_agent, details, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                rows)
con.execute("UPDATE audit_chain SET head_seq = ?, head_hash = ? WHERE id = 1", (n, prev))
con.commit()
print(f"{n}:{prev.hex()}")
