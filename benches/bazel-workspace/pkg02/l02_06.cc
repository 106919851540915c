#include "pkg02/l02_06.h"
#include "pkg02/l02_05.h"
#include <algorithm>
#include <numeric>

namespace l02_06 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 14) ^ (b + 24); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 24, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 5 == 0; }));
  total += l02_05::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l02_06:" + std::to_string(score({seed, seed * 14, 24}));
}
}  // namespace l02_06
