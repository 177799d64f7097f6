"""What an AWS call's failure means for the person at the terminal, in one line with what to do.

Every command that talks to AWS can meet the same few failures: no credentials, expired or
refused ones, no network, throttling past the retries, an endpoint that is not AWS's (a region
that does not exist, a wrong AWS_ENDPOINT_URL), access denied. They are the user's to fix, never
a bug in builder: the CLI's error boundary (builder/cli.py) turns each into this message and
exit 1, and preflight's credentials check uses the same words.

botocore is imported by whoever raised the exception; this module imports it only to look.
"""

from __future__ import annotations

# ClientError codes, by what the user does about them.
EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
INVALID = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "AuthFailure",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException"}
THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
}
# Where credentials come from, for the messages below.
CREDENTIAL_SOURCES = (
    "set AWS_PROFILE (or aws.profile in platform.yaml, or --profile) to a profile of ~/.aws/config, "
    "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)


def describe(exc: BaseException) -> str | None:
    """The user's message for `exc` if it is an AWS failure of theirs to fix; None otherwise."""
    explained = explain(exc)
    return f"{explained[0]}: {explained[1]}" if explained else None


def explain(exc: BaseException) -> tuple[str, str] | None:
    """(what went wrong, what to do) for an AWS failure of the user's to fix; None otherwise."""
    from botocore import exceptions as boto
    from botocore.parsers import ResponseParserError

    if isinstance(exc, boto.ProfileNotFound):
        return (
            f"AWS profile {exc.kwargs.get('profile')!r} is not in ~/.aws/config or ~/.aws/credentials",
            CREDENTIAL_SOURCES,
        )
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return f"no AWS credentials found ({exc})", CREDENTIAL_SOURCES
    if isinstance(exc, boto.SSOError | boto.TokenRetrievalError):
        return f"the AWS SSO session cannot give credentials ({exc})", "run `aws sso login` for this profile"
    if isinstance(exc, boto.EndpointConnectionError | boto.ConnectTimeoutError | boto.ConnectionClosedError):
        url = exc.kwargs.get("endpoint_url", "AWS")
        return (
            f"cannot reach {url} ({type(exc).__name__})",
            "check this machine's network and proxy (HTTPS_PROXY), the region, and AWS_ENDPOINT_URL if set",
        )
    if isinstance(exc, boto.ReadTimeoutError):
        return f"{exc.kwargs.get('endpoint_url', 'AWS')} did not answer in time", "check the network and run it again"
    if isinstance(exc, ResponseParserError):
        return (
            "the endpoint did not answer as AWS does (its reply is not the API's)",
            "check the region (--region, AWS_REGION, aws.region) and AWS_ENDPOINT_URL if set",
        )
    if isinstance(exc, boto.ClientError):
        return _client_error(exc)
    return None


def _client_error(exc) -> tuple[str, str]:
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), error.get("Message", "")
    if "<html" in message.lower():  # a proxy or captive page answered, not the API
        message = "the reply was a web page, not the API's answer"
    operation = exc.operation_name
    if code in EXPIRED:
        return (
            f"the AWS credentials have expired ({code} on {operation})",
            "refresh them (`aws sso login`, or new keys)",
        )
    if code in INVALID:
        return f"AWS does not accept these credentials ({code} on {operation}: {message})", CREDENTIAL_SOURCES
    if code in DENIED:
        return (
            f"access denied: {operation} was refused ({code}: {message})",
            "the identity needs that permission (`builder preflight` lists what the account lacks)",
        )
    if code in THROTTLED:
        return f"AWS throttled {operation} past builder's retries ({code})", "wait a minute and run it again"
    return f"AWS refused {operation}", f"{code}: {message}"
