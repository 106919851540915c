#include "pkg04/l04_07.h"
#include "pkg04/l04_06.h"
#include <algorithm>
#include <numeric>

namespace l04_07 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 7) ^ (b + 43); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 43, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 3 == 0; }));
  total += l04_06::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l04_07:" + std::to_string(score({seed, seed * 7, 43}));
}
}  // namespace l04_07
