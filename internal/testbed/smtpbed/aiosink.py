# A STARTTLS-capable SMTP/LMTP receiver for the Postern tests (testbed.md 1c).
# usage: /usr/bin/python3 aiosink.py {smtp|lmtp} HOST PORT CERT KEY DIR [LMTP-REPLIES [FLAGS]]
# CERT and KEY "-": no STARTTLS. FLAGS "requiretls": advertise REQUIRETLS
# (RFC 8689) and accept it on MAIL FROM.
# Every message is written to DIR/msg-N.json (envelope, TLS state) and
# DIR/msg-N.eml (the content as received, dots unstuffed, CRLF kept).
# LMTP-REPLIES, when given, is a "|"-separated list of replies used in turn
# for the recipients of each LMTP message ("250 2.0.0 ok|452 4.2.2 full").
import asyncio, json, os, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from aiosmtpd.lmtp import LMTP

mode, host, port, cert, key, outdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
lmtp_replies = sys.argv[7].split("|") if len(sys.argv) > 7 and sys.argv[7] else []
flags = sys.argv[8].split(",") if len(sys.argv) > 8 else []
data_reply = sys.argv[9] if len(sys.argv) > 9 and sys.argv[9] != "-" else "250 2.0.0 queued"
requiretls = "requiretls" in flags
dsn = "dsn" in flags
ctx = None
if cert != "-":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)


class Handler:
    count = 0

    async def handle_DATA(self, server, session, envelope):
        Handler.count += 1
        n = Handler.count
        content = envelope.original_content if envelope.original_content is not None else envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        with open(os.path.join(outdir, "msg-%d.eml" % n), "wb") as f:
            f.write(content)
        meta = {
            "from": envelope.mail_from,
            "rcpts": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "rcpt_options": envelope.rcpt_options,
            "rcpt_params": getattr(envelope, "rcpt_params", {}),
            "tls": session.ssl is not None,
            "peer": session.peer[0],
            "helo": session.host_name,
        }
        tmp = os.path.join(outdir, "msg-%d.tmp" % n)
        with open(tmp, "w") as f:
            json.dump(meta, f)
        os.rename(tmp, os.path.join(outdir, "msg-%d.json" % n))
        print("msg#%d from=%s rcpts=%s tls=%s" % (n, envelope.mail_from, envelope.rcpt_tos, meta["tls"]), flush=True)
        if mode == "lmtp":
            out = []
            for i, _ in enumerate(envelope.rcpt_tos):
                out.append(lmtp_replies[i % len(lmtp_replies)] if lmtp_replies else "250 2.0.0 ok")
            return "\r\n".join(out)
        return data_reply


class RequireTLSMixin:
    # REQUIRETLS (RFC 8689): advertised after STARTTLS, and taken off MAIL
    # FROM's parameters before aiosmtpd sees them (it refuses unknown ones);
    # the envelope records it in mail_options.
    async def smtp_EHLO(self, hostname):
        await super().smtp_EHLO(hostname)

    async def push(self, status):
        if status.startswith("250 ") and self._ehlo_pending:
            self._ehlo_pending = False
            if requiretls and self.session.ssl is not None:
                await super().push("250-REQUIRETLS")
            if dsn:
                await super().push("250-DSN")
        await super().push(status)

    # DSN (RFC 3461): advertised with the "dsn" flag; NOTIFY and ORCPT are
    # taken off RCPT TO's parameters before aiosmtpd sees them, and
    # recorded per recipient in rcpt_params.
    async def smtp_RCPT(self, arg):
        kept, params = [], []
        if dsn and arg:
            for p in arg.split():
                (params if p.upper().startswith(("NOTIFY=", "ORCPT=")) else kept).append(p)
            arg = " ".join(kept)
        before = len(self.envelope.rcpt_tos) if self.envelope else 0
        await super().smtp_RCPT(arg)
        if params and self.envelope and len(self.envelope.rcpt_tos) > before:
            if not hasattr(self.envelope, "rcpt_params"):
                self.envelope.rcpt_params = {}
            self.envelope.rcpt_params[self.envelope.rcpt_tos[-1]] = params

    async def smtp_MAIL(self, arg):
        if dsn and arg:
            # RET and ENVID are recorded as mail options.
            parts = arg.split()
            kept = [p for p in parts if not p.upper().startswith(("RET=", "ENVID="))]
            dsnparams = [p for p in parts if p.upper().startswith(("RET=", "ENVID="))]
            arg = " ".join(kept)
            await self._mail_with(arg)
            if self.envelope.mail_from is not None:
                self.envelope.mail_options.extend(dsnparams)
            return
        await self._mail_with(arg)

    async def _mail_with(self, arg):
        self._requiretls = False
        if requiretls and arg:
            parts = arg.split()
            kept = [p for p in parts if p.upper() != "REQUIRETLS"]
            self._requiretls = len(kept) != len(parts)
            arg = " ".join(kept)
        await super().smtp_MAIL(arg)
        if self._requiretls and self.envelope.mail_from is not None:
            self.envelope.mail_options.append("REQUIRETLS")


def make_class(base):
    class S(RequireTLSMixin, base):
        _ehlo_pending = False

        async def smtp_EHLO(self, hostname):
            self._ehlo_pending = True
            await base.smtp_EHLO(self, hostname)
            self._ehlo_pending = False

        async def smtp_LHLO(self, arg):
            self._ehlo_pending = True
            await base.smtp_LHLO(self, arg)
            self._ehlo_pending = False
    return S


class C(Controller):
    def factory(self):
        cls = make_class(LMTP if mode == "lmtp" else SMTP)
        return cls(self.handler, tls_context=ctx, require_starttls=False, hostname="mx1.example.test",
                   enable_SMTPUTF8=True)


c = C(Handler(), hostname=host, port=port)
c.start()
print("listening %s %s:%d" % (mode, host, port), flush=True)
asyncio.get_event_loop().run_forever()
