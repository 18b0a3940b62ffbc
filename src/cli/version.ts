// husk's version and the runtime-spec version it implements.
export const VERSION = '0.1.0';
export const SPEC_VERSION = '1.2.0';
