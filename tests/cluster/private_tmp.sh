# private_tmp KEEP SIZE: mounts a fresh tmpfs over /tmp, binding KEEP (the checkout) back in when it lies
# under /tmp, so this mount namespace sees nothing another node wrote to /tmp.
private_tmp() {
  local keep=$1 size=$2 hold=/run/raymlops-hold-$$
  if [[ "$keep" == /tmp/* ]]; then
    mkdir -p "$hold" && mount --bind "$keep" "$hold"
    mount -t tmpfs -o "size=$size,mode=1777" tmpfs /tmp
    mkdir -p "$keep" && mount --move "$hold" "$keep" && rmdir "$hold"
  else
    mount -t tmpfs -o "size=$size,mode=1777" tmpfs /tmp
  fi
}
