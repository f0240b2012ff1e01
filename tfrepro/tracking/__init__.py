"""Writing to MLflow without slowing or endangering training.

session.py   TrackingSession: the callback's only interface to MLflow (open, log_*, run_params, flush, close)
             session_open.py, session_close.py, session_model.py: its opening, closing and model logging
writer.py    bounded queue -> spooler thread -> spool file -> uploader thread
threads.py   starting a thread without waiting for it (the training thread's, start_run's)
fluent.py    the script's own MLflow calls on the run tfrepro manages, through a session
             fluent_hooks.py: the wrappers on MLflow; hotpath.py: what they read per call
spool.py     the append-only local spool (<run>.jsonl) and its "uploaded up to" marker
upload.py    records -> log_batch calls within MLflow's limits; dedupe against history
backend.py   the server calls, with short timeouts (REST) or through MlflowClient
sync.py      `tfrepro sync`: upload what sessions left in the spool
model.py     the trained model's hash and its MLflow logging
record.py    reading a run's record back (show, diff, replay); MLflow errors as tfrepro's
launch_record.py  a run's launch parsed once into validated values (and the validators)
runs.py      a launcher's MLflow writes: create the run, record the launch, close it
"""
