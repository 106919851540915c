#include "pkg04/l04_06.h"
#include "pkg04/l04_05.h"
#include <algorithm>
#include <numeric>

namespace l04_06 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 6) ^ (b + 42); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 42, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 2 == 0; }));
  total += l04_05::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l04_06:" + std::to_string(score({seed, seed * 6, 42}));
}
}  // namespace l04_06
