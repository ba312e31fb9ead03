-- wrk script of the upload1m test: every request a POST of a 1 MiB body.
wrk.method = "POST"
wrk.body = string.rep("u", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
