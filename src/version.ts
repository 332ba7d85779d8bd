/** The product version, shown by `--version` of luod and luoctl and recorded in the manifest. */
export const VERSION = "0.2.0";
