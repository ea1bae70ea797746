"""litellm-sim: the LiteLLM proxy 1.109.1 in database mode, as the thorfleet collection uses it.

What it follows of the real proxy, and where it differs, is in NOTES.md beside this package. Run it as
the image does: `python3 -m litellm_sim --config /litellm-config.yaml --port 12434`.

common      LiteLLM's version and constants, the log, key hashes and timestamps
config      config.yaml, the environment, the refusal of a weak master key
durations   LiteLLM's durations and budget windows
validation  request bodies and queries as FastAPI and pydantic check them (422)
errors      the error answers
db          PostgreSQL: the schema, the connection, rows as LiteLLM answers them
limits      per-key rpm, tpm and parallel requests
proxy       authentication, the checks on a key, backends
keys        /key/*, /spend/logs, /global/spend/keys
http        the server, its routes and endpoints, completions and their spend
main        start-up and SIGTERM
"""
