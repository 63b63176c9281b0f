#!/usr/bin/env python3
"""Runs `npm login --auth-type=legacy` in a pseudo-terminal (npm reads the password only from a
terminal) and answers its prompts: `login.py REGISTRY USERCONFIG USER PASSWORD`. Exits with
npm's status; npm's output goes to stdout."""
import os, pty, select, sys, time

registry, userconfig, user, password = sys.argv[1:5]
pid, fd = pty.fork()
if pid == 0:
    os.execvp("npm", ["npm", "login", "--auth-type=legacy", "--registry", registry, "--userconfig", userconfig])
out = b""
answered = set()
deadline = time.time() + 60
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.5)
    if not r:
        continue
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
    text = out.decode(errors="replace")
    if "Username:" in text and "user" not in answered:
        os.write(fd, (user + "\r").encode()); answered.add("user")
    if "Password:" in text and "password" not in answered:
        os.write(fd, (password + "\r").encode()); answered.add("password")
    if "Email:" in text and "email" not in answered:
        os.write(fd, (f"{user}@example.test\r").encode()); answered.add("email")
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
