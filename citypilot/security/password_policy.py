"""Which passwords a person may choose: long enough and hard to guess.

Checked where people choose passwords (``citypilot users add|reset-password`` and the
user API), not where code provisions accounts (``security.provision``). The strength
is zxcvbn's estimate (Dropbox's estimator: dictionaries of common passwords, names,
words, keyboard patterns, dates, l33t), with the user name and "citypilot" counted as
known words.
"""

from __future__ import annotations

from zxcvbn import zxcvbn

from citypilot.model.errors import BadRequestData

MIN_LENGTH = 10
MAX_LENGTH = 1024
#: zxcvbn's score from 0 (too guessable) to 4; 3 is "safely unguessable" online.
MIN_SCORE = 3


def check_password(password: str, username: str, field: str = "password") -> None:
    """Refuse (BadRequestData naming ``field``) a password that is short or guessable."""
    if len(password) < MIN_LENGTH:
        raise BadRequestData(f"a password needs at least {MIN_LENGTH} characters", field)
    if len(password) > MAX_LENGTH:
        raise BadRequestData(f"a password has at most {MAX_LENGTH} characters", field)
    # zxcvbn's matching grows with length; the first 100 characters decide
    verdict = zxcvbn(password[:100], user_inputs=[username, "citypilot", "city", "pilot"])
    if verdict["score"] < MIN_SCORE:
        feedback = verdict["feedback"]
        hints = " ".join(filter(None, [feedback.get("warning"), *feedback.get("suggestions", [])]))
        raise BadRequestData(
            f"this password is too easy to guess (strength {verdict['score']} of 4, "
            f"{MIN_SCORE} needed). {hints}".strip(),
            field,
        )
