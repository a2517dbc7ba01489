"""A small OpenID Connect provider for the sign-in tests, built on Authlib's server components.

It is real: a discovery document, a JWKS with a fresh RSA key, the authorization code flow
(with PKCE, nonce and state, as Authlib implements them), a token endpoint that authenticates
the client and returns an RS256-signed id_token, a userinfo endpoint and an end-session
endpoint. The only test-specific part is the login form, which signs in whoever types an
e-mail address, so a browser test can sign in as an allowed or a refused user.

    with OidcProvider(client_id="wb", client_secret="s3cret",
                      redirect_uri="http://127.0.0.1:8501/oauth2callback") as issuer:
        ...  # issuer + "/.well-known/openid-configuration"
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Self

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.models import AuthorizationCodeMixin
from flask import Flask, jsonify, redirect, request
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

from support.browser import free_port


@dataclass
class User:
    email: str

    @property
    def sub(self) -> str:
        return "user-" + self.email.replace("@", "-at-")

    def get_user_id(self) -> str:
        return self.sub


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope):
        allowed = {"openid", "email", "profile"}
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return endpoint != "token" or method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None


class OidcProvider:
    """Serves the provider on a free localhost port in a thread while the block runs."""

    def __init__(self, client_id: str, client_secret: str, redirect_uri: str):
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.client = Client(client_id, client_secret, [redirect_uri])
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig"})
        self.codes: dict[str, AuthorizationCode] = {}
        self.signed_in: list[str] = []  # e-mails of every completed sign-in, for assertions
        self.app = self._build_app()

    # ---- the Authlib authorization server, wired to in-memory storage --------------------
    def _build_app(self) -> Flask:
        provider = self
        app = Flask("test-oidc-provider")
        app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"authorization_code": 600}

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")

            def save_authorization_code(self, code, req):
                provider.codes[code] = AuthorizationCode(
                    code=code, client_id=req.client.client_id,
                    redirect_uri=req.payload.redirect_uri, scope=req.payload.scope,
                    user=req.user, nonce=req.payload.data.get("nonce"),
                    code_challenge=req.payload.data.get("code_challenge"),
                    code_challenge_method=req.payload.data.get("code_challenge_method"),
                )  # fmt: skip

            def query_authorization_code(self, code, client):
                item = provider.codes.get(code)
                if item is not None and item.client_id == client.client_id:
                    return item
                return None

            def delete_authorization_code(self, authorization_code):
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code):
                return authorization_code.user

        class IdToken(OpenIDCode):
            def exists_nonce(self, nonce, req):
                return any(c.nonce == nonce for c in provider.codes.values())

            def resolve_client_private_key(self, client):
                return provider.key

            def get_client_algorithm(self, client):
                return "RS256"

            def get_client_claims(self, client):
                return {"iss": provider.issuer, "aud": [client.client_id]}

            def get_encode_header(self, client):
                return {"alg": "RS256", "kid": provider.key.kid}

            def generate_user_info(self, user, scope):
                return provider.user_info(user)

        def save_token(token, req):
            provider.signed_in.append(req.user.email)

        server = AuthorizationServer(app, query_client=self._query_client, save_token=save_token)
        server.register_grant(CodeGrant, [IdToken(require_nonce=True), CodeChallenge(required=False)])

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify(self.metadata())

        @app.get("/jwks")
        def jwks():
            return jsonify(KeySet([self.key]).as_dict(private=False))

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize():
            if request.method == "GET":
                try:
                    server.get_consent_grant(end_user=None)
                except Exception as exc:  # noqa: BLE001 - shown on the provider's own page
                    return f"invalid authorization request: {html.escape(str(exc))}", 400
                return self._login_form(request.query_string.decode())
            user = User(request.form["email"].strip())
            grant = server.get_consent_grant(end_user=user)
            return server.create_authorization_response(grant_user=user, grant=grant)

        @app.post("/token")
        def token():
            return server.create_token_response()

        @app.get("/userinfo")
        def userinfo():
            return jsonify({})

        @app.get("/logout")
        def logout():
            target = request.args.get("post_logout_redirect_uri")
            if target not in self.client.redirect_uris:
                return "unknown post_logout_redirect_uri", 400
            return redirect(target)

        return app

    def _query_client(self, client_id):
        return self.client if client_id == self.client.client_id else None

    @staticmethod
    def user_info(user: User) -> UserInfo:
        name = user.email.split("@")[0].replace(".", " ").title()
        return UserInfo(sub=user.sub, email=user.email, email_verified=True, name=name)

    def metadata(self) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "end_session_endpoint": f"{self.issuer}/logout",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "email", "email_verified", "name"],
        }

    @staticmethod
    def _login_form(query: str) -> str:
        action = "/authorize?" + html.escape(query)
        return (
            "<!doctype html><title>Test identity provider</title>"
            "<h1>Test identity provider</h1>"
            f'<form method="post" action="{action}">'
            '<label>E-mail <input name="email" type="email" required></label>'
            '<button type="submit">Sign in</button></form>'
        )

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    # ---- serving ---------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="oidc-provider")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
