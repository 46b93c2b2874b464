#!/bin/sh
# Secrets of the deploy/ templates: generate them, and render a template with them.
#
#   sh deploy/secrets.sh generate deploy/secrets
#       One random password per file (<name>_password, e.g. worker_password), a webhook
#       secret, and a TLS CA plus a certificate naming every compose host (tls/). Existing
#       files are kept. Needs openssl. The files are readable by all (0644) so that the
#       containers' own users can read the bind mounts: keep the directory to yourself, and in
#       Kubernetes use Secrets instead.
#
#   sh deploy/secrets.sh render <secrets dir> <template> <output>
#       Fills every CHANGE_ME_<name>_password placeholder of <template> from
#       <secrets dir>/<name>_password: in an ACL rule (`>CHANGE_ME_...`) as the SHA-256 hash
#       `#<hex>`, so users.acl and the sentinels' user lines hold no secret; anywhere else
#       (masterauth, sentinel auth-pass / sentinel-pass, which the server must send) as the
#       value itself. Fails, writing nothing, when a placeholder has no file. The output is
#       mode 0600 (the process that renders it runs the server).
#
# deploy/docker-compose.yml renders redis.conf, users.acl and sentinel.conf with it at start.
set -eu

NAMES="admin worker producer monitor replica sentinel sentinel_admin sentinel_peer \
sentinel_client postgres"
HOSTS="redis-master redis-replica sentinel-1 sentinel-2 sentinel-3 localhost"

generate() {
    dir=$1
    mkdir -p "$dir/tls"
    for name in $NAMES; do
        file="$dir/${name}_password"
        [ -s "$file" ] || openssl rand -hex 24 > "$file"
    done
    [ -s "$dir/razorpay_webhook_secret" ] || openssl rand -hex 24 > "$dir/razorpay_webhook_secret"
    tls="$dir/tls"
    if [ ! -s "$tls/redis.crt" ]; then
        san="IP:127.0.0.1"
        for host in $HOSTS; do san="$san,DNS:$host"; done
        openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -keyout "$tls/ca.key" -out "$tls/ca.crt" -days 825 -subj "/CN=streamflow CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
            -keyout "$tls/redis.key" -out "$tls/redis.csr" -subj "/CN=redis" 2>/dev/null
        printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n%s\n%s\n' \
            "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$san" > "$tls/redis.ext"
        openssl x509 -req -in "$tls/redis.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
            -CAcreateserial -days 825 -out "$tls/redis.crt" -extfile "$tls/redis.ext" 2>/dev/null
        rm -f "$tls/redis.csr" "$tls/redis.ext" "$tls/ca.srl"
    fi
    chmod 0644 "$dir"/*_password "$dir/razorpay_webhook_secret" "$tls"/*
    chmod 0600 "$tls/ca.key"  # signs certificates: never mounted anywhere
}

render() {
    dir=$1 template=$2 output=$3
    umask 077
    work="$output.rendering"
    cp "$template" "$work"
    for file in "$dir"/*_password; do
        [ -f "$file" ] || continue
        name=$(basename "$file" _password)
        value=$(cat "$file")
        hash=$(printf '%s' "$value" | sha256sum | cut -d ' ' -f 1)
        escaped=$(printf '%s' "$value" | sed -e 's/[\\/&|]/\\&/g')
        sed -i -e "s|>CHANGE_ME_${name}_password|#${hash}|g" \
               -e "s|CHANGE_ME_${name}_password|${escaped}|g" "$work"
    done
    if grep -q 'CHANGE_ME_[a-z_]*_password' "$work"; then
        missing=$(grep -o 'CHANGE_ME_[a-z_]*_password' "$work" | sort -u | tr '\n' ' ')
        rm -f "$work"
        echo "secrets.sh: no file in $dir for: $missing" >&2
        exit 2
    fi
    chmod 0600 "$work"
    mv "$work" "$output"
}

case "${1:-}" in
    generate) [ $# -eq 2 ] || { echo "usage: $0 generate <dir>" >&2; exit 2; }; generate "$2" ;;
    render) [ $# -eq 4 ] || { echo "usage: $0 render <dir> <template> <output>" >&2; exit 2; }
            render "$2" "$3" "$4" ;;
    *) echo "usage: $0 generate <dir> | render <dir> <template> <output>" >&2; exit 2 ;;
esac
