# Open WebUI's accounts (emails, oldest first) and its number of chats, as JSON, read in its own container.
import json
import os
import sqlite3

path = os.path.join(os.environ.get("DATA_DIR", "/app/backend/data"), "webui.db")
found = {"accounts": [], "chats": 0}
if os.path.exists(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    found["accounts"] = [row[0] for row in db.execute("SELECT email FROM user ORDER BY created_at")]
    found["chats"] = db.execute("SELECT count(*) FROM chat").fetchone()[0]
print(json.dumps(found))
