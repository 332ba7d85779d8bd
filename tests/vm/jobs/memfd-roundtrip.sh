#!/bin/sh
# memfd-roundtrip -- one live update of a memfd, driven by our own kernel layer in Bun.
# Boot 1 (LUO_STAGE=1): guest/memfd-roundtrip.ts stage1 preserves the memfd and kexecs.
# Boot 2 (LUO_STAGE=2): guest/memfd-roundtrip.ts stage2 verifies it and prints VERIFIED.
bun="$REPO/node_modules/.bin/bun"
prog="$REPO/tests/vm/guest/memfd-roundtrip.ts"
case "$LUO_STAGE/$LUO_BOOT" in
1/1) hostrun "$bun" "$prog" stage1
     echo "JOB: stage1 returned without a kexec"; exit 1 ;;
2/2) exec hostrun "$bun" "$prog" stage2 ;;
*)   echo "JOB: unexpected boot: stage $LUO_STAGE, boot $LUO_BOOT"; exit 1 ;;
esac
