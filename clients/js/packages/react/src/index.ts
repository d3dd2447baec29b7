export {
  RunwireProvider,
  useAgent,
  useConnection,
  useRunwireStore,
  useThreads,
  type AgentStatus,
  type AgentView,
  type ConnectionView,
  type RunwireProviderProps,
  type ThreadsView,
  type UseAgentOptions,
} from "./hooks.tsx";
export { DRAFT, ThreadStore, type LoadState, type ThreadEntry, type ThreadList } from "./store.ts";
